"""Service side of monitoring: storage of feedback, references and checks; the drift worker; the schedule."""
