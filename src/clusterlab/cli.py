"""`clusterlab`: the tasks of `inv`, as a program of its own (invoke's Program, narrowed).

Its options are the tool's: `--help [TASK]`, `--version`, `--list`, `--lab` and each task's
flags.
invoke's core options that do nothing for a clusterlab user (--dry, --echo, --hide, --pty,
--warn-only, --config, --collection, …) are not offered, and given anyway they are refused
with exit 2, never accepted and ignored. Exit codes: 0 done, 1 a stage or command failed,
2 a usage error or a bad spec.
"""

from __future__ import annotations

import difflib
import inspect
import re
import sys

from invoke import Program
from invoke.exceptions import Exit, ParseError, UnexpectedExit
from invoke.parser import Argument, ParserContext

from clusterlab import __version__, paths
from clusterlab.commands import namespace

USAGE = 2  # argparse's and click's exit code for a usage error
# invoke's core options, not offered by clusterlab (invoke.program.Program.core_args/task_args).
INVOKE_OPTIONS = (
    "--command-timeout",
    "--config",
    "--collection",
    "--debug",
    "--dry",
    "--echo",
    "--hide",
    "--list-depth",
    "--list-format",
    "--no-dedupe",
    "--prompt-for-sudo-password",
    "--pty",
    "--search-root",
    "--warn-only",
    "--write-pyc",
)
UNKNOWN = re.compile(r"^No idea what '(?P<what>.*)' is!$")
MISSING_POSITIONAL = re.compile(
    r"^'(?P<task>[^']+)' did not receive required positional arguments: (?P<names>.*)$"
)


def suggest(word: str, choices: list[str]) -> str:
    """'; did you mean 'x'?' for the closest choice, or ''."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class ClusterlabProgram(Program):
    def core_args(self) -> list[Argument]:
        return [
            Argument(names=("help", "h"), optional=True, help="Show help: of TASK if given."),
            Argument(
                names=("lab",),
                help="Lab of every task that takes one, as its --lab "
                "(default: $CLUSTERLAB_LAB, else 'default').",
            ),
            Argument(names=("list",), kind=bool, default=False, help="List the tasks."),
            Argument(names=("version", "V"), kind=bool, default=False, help="Show the version."),
        ]

    def parse_core(self, argv: list[str] | None) -> None:
        argv = self.task_help_first(list(sys.argv if argv is None else argv))
        self.normalize_argv(argv)
        self.parse_core_args()
        if self.args.version.value:
            self.print_version()
            raise Exit

    def task_help_first(self, argv: list[str]) -> list[str]:
        """`TASK … --help` (or -h) before any `--` is `--help TASK`: invoke would hand the flag
        to a task's positional parameter (`ssh --help` ran ssh to a node named --help)."""
        words = argv[1:]
        end = words.index("--") if "--" in words else len(words)
        i = 0
        while i < end and words[i].startswith("-"):
            i += 2 if words[i] == "--lab" else 1
        if (
            i < end
            and words[i] in self.namespace.task_names
            and any(w in ("-h", "--help") for w in words[i + 1 : end])
        ):
            return [argv[0], "--help", words[i]]
        return argv

    def update_config(self, merge: bool = True) -> None:
        if self.args.lab.value:  # read by commands.lab_name where a task has no --lab
            self.config.load_overrides({"clusterlab": {"lab": self.args.lab.value}}, merge=False)
        if merge:
            self.config.merge()

    def check_labs(self) -> None:
        """A lab named on the line that no inventory root holds: refused with the closest
        name, before any task runs (a task would refuse it too, without the suggestion)."""
        named = [self.args.lab.value] + [
            ctx.args.lab.value for ctx in self.tasks if "lab" in ctx.args and ctx.args.lab.value
        ]
        known = paths.known_labs()
        for lab in filter(None, named):
            if lab not in known:
                raise ParseError(
                    f"no lab named {lab!r}{suggest(lab, known)} (labs: {', '.join(known)}); "
                    f"`{self.binary} init {lab}` makes one"
                )

    def parse_tasks(self) -> None:
        """invoke's, except that a task whose positional parameter defaults to None (demo's
        NAME) gets it as "" when the line has none, so the task says what to give."""
        try:
            super().parse_tasks()
        except ParseError as exc:
            missing = MISSING_POSITIONAL.match(str(exc))
            task = missing["task"] if missing else None
            if not task or not self._positional_optional(task) or task not in self.core.unparsed:
                raise
            argv = list(self.core.unparsed)
            argv.insert(argv.index(task) + 1, "")
            self.core.unparsed = argv
            super().parse_tasks()

    def _positional_optional(self, task: str) -> bool:
        params = inspect.signature(self.collection[task].body).parameters
        return all(params[name].default is None for name in self.collection[task].positional)

    def parse_cleanup(self) -> None:
        halp = self.args.help.value
        if halp is True:
            self.print_help()
            raise Exit
        if halp:
            if halp not in self.parser.contexts:
                raise ParseError(f"No idea what '{halp}' is!")
            self.print_task_help(halp)
            raise Exit
        if self.args.list.value:
            self.list_tasks()
            raise Exit
        if not self.tasks:
            self.print_help()
            raise Exit

    def print_help(self) -> None:
        print(
            f"Usage: {self.binary} [--lab LAB] TASK [OPTIONS] [ARGS]  |  --help [TASK]  |  --version"
        )
        print("")
        print("Options:")
        print("")
        self.print_columns(self.initial_context.help_tuples())
        self.list_tasks()
        print("Exit codes: 0 done; 1 a stage or command failed; 2 a usage error or a bad lab spec.")

    def print_task_help(self, name: str) -> None:
        ctx: ParserContext = self.parser.contexts[name]
        positional = [a for a in ctx.positional_args]
        names = " ".join(a.name.upper() for a in positional)
        flags = [a for a in ctx.flags.values() if not a.positional]
        print(f"Usage: {self.binary} {name}{' [OPTIONS]' if flags else ''} {names}".rstrip())
        print("")
        for line in (inspect.getdoc(self.collection[name]) or "").splitlines():
            print(self.leading_indent + line if line.strip() else "")
        print("")
        if positional:
            print("Arguments:")
            self.print_columns([(a.name.upper(), a.help or "") for a in positional])
        shown = [t for t in ctx.help_tuples() if not self._is_positional(ctx, t[0])]
        if shown:
            print("Options:")
            self.print_columns(shown)

    @staticmethod
    def _is_positional(ctx: ParserContext, names: str) -> bool:
        flag = names.rsplit(",", maxsplit=1)[-1].strip().split("=")[0]
        arg = ctx.flags.get(flag)
        return bool(arg and arg.positional)

    def explain(self, exc: ParseError) -> str:
        """invoke's parse error as a clusterlab usage error, with a suggestion where one fits."""
        msg = str(exc)
        unknown = UNKNOWN.match(msg)
        if unknown:
            what = unknown["what"]
            flag = what.split("=")[0]
            if flag in INVOKE_OPTIONS:
                return f"{flag} is an option of invoke that {self.binary} does not offer"
            ctx = exc.context
            if what.startswith("-"):
                choices = list((ctx.flags if ctx else self.initial_context.flags).keys())
                where = f"task {ctx.name!r}" if ctx and ctx.name else self.binary
                return f"unknown option {what!r} for {where}{suggest(flag, choices)}"
            tasks = list(self.collection.task_names)
            return f"unknown task {what!r}{suggest(what, tasks)} (tasks: {', '.join(tasks)})"
        missing = MISSING_POSITIONAL.match(msg)
        if missing:
            task = missing["task"]
            ctx = self.parser.contexts.get(task) if hasattr(self, "parser") else None
            lines = [f"{task}: missing {missing['names'].replace(chr(39), '').upper()}"]
            for arg in ctx.positional_args if ctx else []:
                lines.append(f"  {arg.name.upper()}: {arg.help or ''}".rstrip(": "))
            names = " ".join(a.name.upper() for a in (ctx.positional_args if ctx else []))
            lines.append(
                f"usage: {self.binary} {task} [OPTIONS] {names} ({self.binary} --help {task})"
            )
            return "\n".join(lines)
        return msg

    def run(self, argv: list[str] | str | None = None, exit: bool = True) -> None:
        """invoke's Program.run, with usage errors as exit 2 and explained."""
        try:
            self.create_config()
            self.parse_core(argv)
            self.parse_collection()
            self.parse_tasks()
            self.parse_cleanup()
            self.check_labs()
            self.update_config()
            self.execute()
        except ParseError as exc:
            print(f"{self.binary}: {self.explain(exc)}", file=sys.stderr)
            if exit:
                sys.exit(USAGE)
        except Exit as exc:
            if exc.message:
                print(exc.message, file=sys.stderr)
            if exit:
                sys.exit(exc.code)
        except UnexpectedExit as exc:
            if exit:
                sys.exit(exc.result.exited)
        except KeyboardInterrupt:
            sys.exit(1)


program = ClusterlabProgram(
    namespace=namespace(), name="clusterlab", binary="clusterlab", version=__version__
)


def main() -> None:
    program.run()
