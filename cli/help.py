"""`--help` with options under headings (common ones first, the encoder's search options under 'Advanced')."""
from __future__ import annotations

import click


class GroupedCommand(click.Command):
    """A command whose options carry a `group` name (set by :func:`grouped`); --help lists them group by
    group in the order the groups are first met, ungrouped ones under 'Options'."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        groups: dict[str, list] = {}
        for p in self.get_params(ctx):
            rec = p.get_help_record(ctx)
            if rec is not None:
                groups.setdefault(getattr(p, "group", None) or "Options", []).append(rec)
        for name, rows in groups.items():
            with formatter.section(name):
                formatter.write_dl(rows)


def grouped(name: str, *decorators):
    """Apply option decorators, tagging the options they add with group name."""
    def apply(f):
        for d in reversed(decorators):
            before = len(getattr(f, "__click_params__", []))
            f = d(f)
            for p in f.__click_params__[before:]:
                p.group = name
        return f
    return apply
