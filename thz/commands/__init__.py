"""The subcommands of `thz`: each module parses flags and calls one function of a package."""
