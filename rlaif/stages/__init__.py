"""The pipeline's stages: each a plain function from dataset(s) plus config to a dataset."""

from rlaif.stages.aggregate import aggregate
from rlaif.stages.evaluate import evaluate
from rlaif.stages.judge import judge
from rlaif.stages.pair import pair
from rlaif.stages.sample import sample
from rlaif.stages.train import train

__all__ = ["aggregate", "evaluate", "judge", "pair", "sample", "train"]
