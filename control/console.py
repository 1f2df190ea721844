"""`bin/trader console`: an interactive REPL on prompt_toolkit, attached over the socket.

Tab completes commands, parameters and the symbols / ids of open positions; history is kept
across sessions; `help` and `help <command>` come from the same grammar as the one-shot
forms. The prompt shows the service's health and pause state after every command, so the
state at 3 a.m. is in front of the operator without asking. Piped input runs line by line.
"""
from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit import prompt as ask_once
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.history import FileHistory

from control import protocol as p
from control.client import ControlClient, NotRunning
from control.oneshot import NOT_RUNNING, OK, execute
from control.protocol import PARAMS
from control.spec import SPECS, CommandError, help_text, parse_line

EXTRA = ("help", "quit", "exit")


def history_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("WAVE_TRADER_HISTORY"):
        return Path(os.environ["WAVE_TRADER_HISTORY"])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "wave-trader" / "console_history"


class ConsoleCompleter(Completer):
    """Commands, then what each command takes; open positions are fetched at most every 3 s."""

    def __init__(self, client: ControlClient) -> None:
        self.client = client
        self._targets: list[str] = []
        self._waves: list[str] = []
        self._at = 0.0

    def _refresh(self) -> None:
        if time.monotonic() - self._at < 3:
            return
        self._at = time.monotonic()
        try:
            rows = self.client.call("positions").positions
            self._targets = sorted({x.symbol for x in rows} | {x.symbol.split("/")[0] for x in rows}
                                   | {x.id for x in rows})
            self._waves = [w.id for w in self.client.call("waves", limit=20).waves]
        except (NotRunning, p.ProtocolError, OSError):
            pass

    def candidates(self, words: list[str], index: int, prev: str) -> Iterable[str]:
        if index == 0:
            return [*SPECS, *EXTRA]
        cmd = words[0]
        if cmd == "help":
            return list(SPECS) if index == 1 else []
        spec = SPECS.get(cmd)
        if spec is None:
            return []
        if prev == "--symbol" or (spec.targets and index == 1):
            self._refresh()
            return self._targets
        if cmd == "set":
            return list(PARAMS) if index == 1 else ["--symbol"] if index >= 3 else []
        if cmd == "wave" and index == 1:
            self._refresh()
            return self._waves
        if cmd == "events":
            return ["--follow", "--symbol", "--limit"]
        if cmd == "close-all":
            return ["--yes"]
        return []

    def get_completions(self, document, complete_event):
        text = document.text_before_cursor
        words = text.split()
        if not words or text.endswith(" "):
            current, index = "", len(words)
        else:
            current, index = words[-1], len(words) - 1
        prev = words[index - 1] if index >= 1 and index - 1 < len(words) else ""
        for c in self.candidates(words, index, prev):
            if c.lower().startswith(current.lower()):
                yield Completion(c, start_position=-len(current))


class Console:
    def __init__(self, client: ControlClient) -> None:
        self.client = client
        self.state = "?"

    def refresh_prompt(self) -> str:
        try:
            h = self.client.call("health")
            self.state = h.status + (" PAUSED" if h.paused else "") + (" HALTED" if h.halted or h.loss_limit_hit else "")
        except NotRunning:
            self.state = "no service"
        except (p.ProtocolError, OSError):
            self.state = "?"
        return f"wave-trader[{self.state}]> "

    def run_line(self, line: str, ask) -> bool:
        """Run one line; False when the operator wants to leave."""
        try:
            argv = shlex.split(line)
        except ValueError as e:
            print(f"cannot parse: {e}")
            return True
        if not argv:
            return True
        if argv[0] in ("quit", "exit"):
            return False
        try:
            if argv[0] == "help" or argv[0] == "?":
                print(help_text(argv[1] if len(argv) > 1 else None))
                return True
            parsed = parse_line(argv)
        except CommandError as e:
            print(e)
            return True
        if parsed is None:
            return True
        spec, ns = parsed
        if spec.name == "close-all" and not ns.yes:
            try:
                n = len(self.client.call("positions").positions)
            except (NotRunning, p.ProtocolError) as e:
                print(e)
                return True
            if ask(f"close ALL {n} open positions at market? type 'yes' to confirm: ").strip() != "yes":
                print("close-all cancelled")
                return True
            ns.yes = True
        try:
            execute(self.client, spec, ns, sys.stdout)
        except KeyboardInterrupt:
            print("interrupted (the request may still complete in the service)")
        return True


def run_console(client: ControlClient, history: str | None) -> int:
    try:
        st = client.call("status")
    except NotRunning as e:
        print(f"bin/trader console: {e}", file=sys.stderr)
        return NOT_RUNNING
    except p.ProtocolError as e:
        print(f"bin/trader console: the service answered with an error: {e.message}", file=sys.stderr)
        return NOT_RUNNING
    console = Console(client)
    print(f"attached to wave-trader {st.version} (pid {st.pid}, {st.venue}) at {client.path}; "
          f"health {st.health.status}{', PAUSED' if st.paused else ''}. `help` lists commands, Ctrl-D leaves.")
    if not sys.stdin.isatty():  # piped: a script of commands, no prompt
        for line in sys.stdin:
            if not console.run_line(line, ask=lambda q: "no"):
                break
        return OK
    path = history_path(history)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    session: PromptSession = PromptSession(history=FileHistory(str(path)), completer=ConsoleCompleter(client),
                                           complete_while_typing=False)
    prompt = console.refresh_prompt()
    while True:
        try:
            line = session.prompt(prompt)
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        if not console.run_line(line, ask=ask_once):
            break
        prompt = console.refresh_prompt()
    print("detached; the service keeps running")
    return OK
