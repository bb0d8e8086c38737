"""Explanations of a served model's outputs: captum attributions over words and tokens, scored for faithfulness,
computed on the serving engine's lanes below predictions and generations."""
