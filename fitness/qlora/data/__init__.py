"""The data a trial trains and is scored on: records in every format read, chat rendering
and masking, the train/validation split, and tokens packed into blocks."""
