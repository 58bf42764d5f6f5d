"""The one error type for bad input data."""


class DataFormatError(ValueError):
    """A malformed input file: says which file, line and field, and what was wrong.

    Args:
        path: str. The file that holds the bad value.
        line: int or None. 1-based line number in that file (the header is line 1 for CSV).
        field: str or None. Name of the field (column) at fault.
        message: str. What is wrong, in words a user can act on.
    """

    def __init__(self, path, line, field, message):
        self.path = str(path)
        self.line = line
        self.field = field
        self.message = message
        where = self.path
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")
