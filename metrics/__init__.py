"""Pure metric computation: numpy and sacrebleu only, no web, database or torch code."""
