"""From judgments to trustworthy preferences: position and length bias, Bradley-Terry
scores, calibration against labels, judge agreement (``judge_eval``), the judge audit and
adaptive second orders."""
