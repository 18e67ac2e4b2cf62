"""The one user-facing error of the library and the tools: bad input or a refused action, said in one line."""


class ToolError(Exception):
    """A user-facing failure (missing or damaged file, unknown name, refused overwrite): printed as one line, exit
    code 2, by the `gsdocc` command."""
