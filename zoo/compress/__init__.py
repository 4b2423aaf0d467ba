"""The saved-model format (format.py: constants and the table of transforms), its writer
(export.py) and its one loader (load.py); one module per transform beside them."""
