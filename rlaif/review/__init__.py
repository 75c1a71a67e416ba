"""``rlaif review``: a local page where a person reads the judges' decisions and labels pairs."""
