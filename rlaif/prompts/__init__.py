"""Load prompt sets from the built-in set, local files, ``save_to_disk`` folders or the hub.

Every loader ends in the same validated shape (``prompt_id``, ``prompt``, ``category``)
so the stages never see a user's column names. A prompt is a string, or a conversation (a
list of user and assistant messages ending with the user's turn, :mod:`rlaif.chat`); a set
that holds any conversation holds only conversations (a string becomes its one user turn),
as a column has one type.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

from rlaif.chat import conversation_error, transcript, turns
from rlaif.config import PromptsConfig
from rlaif.errors import ConfigError

log = logging.getLogger(__name__)
BUILTIN = {
    "builtin": Path(__file__).with_name("default_prompts.jsonl"),
    "builtin_conversations": Path(__file__).with_name("default_conversations.jsonl"),
}
"""The shipped prompt sets: 240 single questions in eight categories, and 48 conversations
(two or three user turns) in the same categories, for multi-turn runs."""
_FILE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def load_prompts(cfg: PromptsConfig) -> Dataset:
    """Return the prompt set as ``prompt_id``, ``prompt``, ``category`` (and ``reference``)
    columns."""
    source = str(BUILTIN[cfg.source]) if cfg.source in BUILTIN else cfg.source
    raw = _read(source, cfg.split, cfg.prompt_column)
    return normalize_prompts(raw, cfg, source=source)


def split_prompts(prompts: Dataset, cfg: PromptsConfig) -> tuple[Dataset, Dataset]:
    """Shuffle deterministically, apply ``limit``, and hold out ``eval_size`` prompts."""
    shuffled = prompts.shuffle(seed=cfg.shuffle_seed)
    if cfg.limit is not None:
        shuffled = shuffled.select(range(min(cfg.limit, len(shuffled))))
    if cfg.eval_size >= len(shuffled):
        raise ConfigError(
            f"prompts.eval_size={cfg.eval_size} leaves no training prompts out of {len(shuffled)}"
        )
    held_out = shuffled.select(range(cfg.eval_size))
    train = shuffled.select(range(cfg.eval_size, len(shuffled)))
    return train, held_out


def drop_long_prompts(prompts: Dataset, tokenizer, max_tokens: int) -> tuple[Dataset, int]:
    """The prompts of at most ``max_tokens`` tokens, and how many were longer. A prompt of
    60 KB would otherwise take sampling past 10 GB of memory before anything said no."""
    if len(prompts) == 0:
        return prompts, 0
    texts = [transcript(p) for p in prompts["prompt"]]
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    keep = [i for i, n in enumerate(lengths) if n <= max_tokens]
    dropped = len(lengths) - len(keep)
    if dropped:
        log.warning(
            "prompts: %d of %d prompts are longer than prompts.max_prompt_tokens=%d tokens "
            "(the longest is %d); they are skipped",
            dropped,
            len(lengths),
            max_tokens,
            max(lengths),
        )
    return (prompts.select(keep) if dropped else prompts), dropped


def normalize_prompts(raw: Dataset, cfg: PromptsConfig, *, source: str) -> Dataset:
    columns = raw.column_names
    if cfg.prompt_column not in columns:
        raise ConfigError(
            f"{source}: no prompt column '{cfg.prompt_column}' (prompts.prompt_column); "
            f"columns are: {', '.join(columns) or 'none'}"
        )
    if cfg.id_column is not None and cfg.id_column not in columns:
        raise ConfigError(
            f"{source}: no id column '{cfg.id_column}' (prompts.id_column; set it to null to "
            f"derive ids from the prompt text); columns are: {', '.join(columns)}"
        )
    texts = raw[cfg.prompt_column]
    for row, text in enumerate(texts, 1):
        if isinstance(text, list):
            problem = conversation_error(text)
            if problem is not None:
                raise ConfigError(f"{source}: row {row}: '{cfg.prompt_column}': {problem}")
        elif not isinstance(text, str) or not text.strip():
            raise ConfigError(
                f"{source}: row {row}: '{cfg.prompt_column}' must be a non-empty string or a "
                f"conversation (a list of messages), got {text!r}"
            )
    if any(isinstance(t, list) for t in texts):
        texts = [turns(t) for t in texts]
    if cfg.id_column is None:
        ids = [
            hashlib.sha256((t if isinstance(t, str) else json.dumps(t)).encode()).hexdigest()[:16]
            for t in texts
        ]
    else:
        ids = [str(i) for i in raw[cfg.id_column]]
    seen: dict[str, int] = {}
    for row, pid in enumerate(ids):
        if pid in seen:
            raise ConfigError(
                f"{source}: row {row + 1}: duplicate id '{pid}' in column '{cfg.id_column}' "
                f"(first at row {seen[pid] + 1})"
            )
        seen[pid] = row
    categories = raw["category"] if "category" in columns else [""] * len(texts)
    out = {"prompt_id": ids, "prompt": texts, "category": [str(c or "") for c in categories]}
    if cfg.reference_column is not None:
        if cfg.reference_column not in columns:
            raise ConfigError(
                f"{source}: no reference column '{cfg.reference_column}' "
                f"(prompts.reference_column); columns are: {', '.join(columns)}"
            )
        out["reference"] = [str(r or "") for r in raw[cfg.reference_column]]
    return Dataset.from_dict(out)


def _read(source: str, split: str, prompt_column: str) -> Dataset:
    path = Path(source).expanduser()
    if path.is_dir():
        loaded = load_from_disk(str(path))
        if isinstance(loaded, DatasetDict):
            if split not in loaded:
                raise ConfigError(
                    f"{source}: no split '{split}' (prompts.split); splits are: {', '.join(loaded)}"
                )
            loaded = loaded[split]
        return loaded
    if path.suffix in _FILE_FORMATS:
        if not path.is_file():
            raise ConfigError(f"prompts.source: file not found: {source}")
        if path.suffix != ".parquet":
            _check_text(path)
        try:
            with _quiet_datasets():  # its ERROR lines would stand above the clean message
                return load_dataset(_FILE_FORMATS[path.suffix], data_files=str(path), split="train")
        except Exception as exc:
            mixed = _mixed_jsonl(path, prompt_column) if path.suffix == ".jsonl" else None
            if mixed is None:
                raise ConfigError(_unreadable(path, exc)) from exc
            return mixed
    try:
        return load_dataset(source, split=split)
    except Exception as exc:
        raise ConfigError(
            f"prompts.source: '{source}' is not builtin, a file (.jsonl, .json, .csv, .parquet), "
            f"a save_to_disk folder, or a loadable hub dataset: {exc}"
        ) from exc


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """``datasets`` logs a file it cannot read at ERROR before raising; the raised error
    becomes a message naming the file and line, so its own line is left out."""
    logger = logging.getLogger("datasets")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _mixed_jsonl(path: Path, prompt_column: str) -> Dataset | None:
    """A ``.jsonl`` whose prompts mix strings and conversations (which ``datasets`` cannot
    type as one column), every string made its conversation's one user turn; None when the
    file is unreadable for another reason."""
    try:
        with path.open(encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        if not all(isinstance(r, dict) for r in rows):
            return None
        for row in rows:
            if isinstance(row.get(prompt_column), str):
                row[prompt_column] = turns(row[prompt_column])
        return Dataset.from_list(rows)
    except Exception:
        return None


def _unreadable(path: Path, exc: Exception) -> str:
    """Why ``datasets`` could not read a prompt file, down to the line where one can be
    named: the first line of a ``.jsonl`` that is not a JSON object, a CSV without rows."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as bad:
                    return f"{path}:{number}: not valid JSON ({bad})"
                if not isinstance(row, dict):
                    return f"{path}:{number}: a JSON object per line is needed, got {line[:80]!r}"
    if path.suffix == ".json":
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except ValueError as bad:
            line = getattr(bad, "lineno", None)
            return f"{path}{f':{line}' if line else ''}: not valid JSON ({bad})"
    if path.suffix == ".csv":
        with path.open(encoding="utf-8") as fh:
            rows = sum(1 for line in fh if line.strip())
        if rows <= 1:
            return f"{path}: a header and no rows; add one prompt per line below the header"
    return f"{path}: cannot read as {path.suffix[1:]}: {exc}"


def _check_text(path: Path) -> None:
    """A text prompt file must be non-empty UTF-8; say where it is not, before parsing."""
    line = 1
    decoder = codecs.getincrementaldecoder("utf-8")()
    empty = True
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            try:
                text = decoder.decode(block)
            except UnicodeDecodeError as exc:
                line += block[: exc.start].count(b"\n")
                raise ConfigError(
                    f"{path}:{line}: not UTF-8 text (byte 0x{block[exc.start]:02x}); save the "
                    "file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                ) from None
            line += block.count(b"\n")
            empty = empty and not text.strip()
    if empty:
        raise ConfigError(f"{path}: the file is empty: no prompts to read")
