"""The terminal chat: prompt_toolkit input (history, arrow keys), rich output, slash commands.

When the model ranks or writes reasons, the list is shown at once with evidence reasons and the model's list
follows. Ctrl-C cancels the current turn (the session stays as it was; once the first list is shown, that list
stands and the model's part is dropped); Ctrl-D exits."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from genre_agent.chat.agent import LIVE, REVISED, Agent, Reply
from genre_agent.errors import GenreAgentError
from genre_agent.sanitize import for_terminal
from genre_agent.schemas import Recommendation

HELP = """\
Just type what you want ("I loved The Matrix and Alien, no horror please", "more like the second one",
"why that one?", "older films", "loved it"). Commands:
  /like N  /dislike N  /seen N   feedback on item N of the latest list
  /why N                        why item N was recommended
  /more                         more results (never repeats what was shown)
  /filters                      what the session knows about you
  /reset                        forget this conversation's preferences
  /user ID                      switch to a catalog user
  /template reload              re-read the prompt templates
  /debug                        toggle showing the prompt, candidates and timings
  /quit                         leave (or Ctrl-D)"""


# One agent call: (cancel event, the first answer's listener, each model reason's listener) -> the reply.
Work = Callable[[threading.Event, Callable[[Reply], None], Callable[[Recommendation], None]], Reply]


class Repl:
    def __init__(self, agent: Agent, console: Console, session_id: str = "terminal",
                 history_file: Path | None = None) -> None:
        self.agent = agent
        self.console = console
        self.session_id = session_id
        self.history_file = history_file
        self.pool = ThreadPoolExecutor(max_workers=1)

    def run(self, user: str | None = None) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        class KeptWherePossible(FileHistory):
            """The input history in its file; where the file cannot be written (a read-only data directory, a
            full disk) the lines of this chat are still recalled, from memory."""

            def store_string(self, string: str) -> None:
                try:
                    super().store_string(string)
                except OSError:
                    pass

        history = KeptWherePossible(str(self.history_file)) if self.history_file else InMemoryHistory()
        prompt: PromptSession[str] = PromptSession(history=history)
        self.agent.session(self.session_id, user)
        catalog = self.agent.catalog_info()
        who = f"user {user}" if user else "a new user"
        self.console.print(f"genre-agent — {escape(catalog.name)} ({catalog.items} "
                           f"{escape(catalog.item_noun_plural)}), "
                           f"chatting as {who}. /help for commands, Ctrl-D to quit.")
        while True:
            try:
                text = prompt.prompt("you> ").strip()
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            if not text:
                continue
            if text.startswith("/"):
                if not self.command(text):
                    break
                continue
            self.turn(self.chat(text))
        self.console.print("bye")
        self.pool.shutdown(wait=False, cancel_futures=True)

    def chat(self, message: str) -> Work:
        """The work of one chat message, for `turn`."""
        return lambda cancel, first, reason: self.agent.chat(self.session_id, message, cancel=cancel,
                                                            on_first=first, on_reason=reason)

    def turn(self, work: Work) -> None:
        """Run one agent call in a worker with a spinner, showing a first answer and the model's reasons as
        soon as they come; Ctrl-C abandons the call."""
        cancel = threading.Event()
        events: queue.SimpleQueue[Reply | Recommendation] = queue.SimpleQueue()
        future: Future[Reply] = self.pool.submit(work, cancel, events.put, events.put)
        first: Reply | None = None
        streamed: dict[str, str] = {}
        try:
            waiting = "thinking…"
            while True:
                with self.console.status(waiting):
                    while not future.done() and events.empty():
                        try:
                            future.result(timeout=0.1)
                        except TimeoutError:
                            continue
                while not events.empty():
                    event = events.get()
                    if isinstance(event, Reply):
                        first = event
                        self.show(first)
                        waiting = "the model is working on this list…"
                    else:
                        if not streamed:
                            self.console.print(LIVE, style="bold", markup=False)
                        streamed[event.item_id] = event.reason
                        self.console.print(for_terminal(f"{event.rank}. {event.title} \u2014 {event.reason}"),
                                           markup=False, highlight=False)
                if future.done() and events.empty():
                    reply = future.result()
                    break
        except KeyboardInterrupt:
            cancel.set()
            kept = f"(the list above stands, with the {len(streamed)} reason(s) the model wrote so far)"
            self.console.print("[yellow]cancelled[/] " + (kept if first else "(the session is unchanged)"))
            return
        except GenreAgentError as exc:
            self.console.print(f"[red]{escape(for_terminal(str(exc)))}[/]")
            return
        if first is None:
            self.show(reply)
        elif reply.recommendations is not None and reply.listed() == first.listed(streamed):
            changed = "the model changed nothing" if not streamed else "the model's answer is the list above"
            self.console.print(f"({changed}: {reply.recommendations.what_the_llm_did()})", style="dim",
                               markup=False, highlight=False)
        else:
            self.console.print(REVISED, style="bold", markup=False)
            self.show(reply)

    def show(self, reply: Reply) -> None:
        rec = reply.recommendations
        if rec is not None and rec.recommendations:
            table = Table(show_header=True, header_style="bold")
            table.add_column("#", justify="right")
            table.add_column("title")
            table.add_column("why")
            for r in rec.recommendations:
                table.add_row(str(r.rank), Text(for_terminal(r.title)), Text(for_terminal(r.reason)))
            self.console.print(table)
            filters = f" · filters: {'; '.join(reply.filters)}" if reply.filters else ""
            self.console.print(for_terminal(f"{rec.backend}:{rec.model} · {rec.timings_ms.total / 1000:.1f} s · "
                                            f"{rec.what_the_llm_did()}{filters}"),
                               style="dim", markup=False, highlight=False)
            if len(reply.text.splitlines()) > len(rec.recommendations):  # a note above the list
                self.console.print(for_terminal(reply.text.splitlines()[0]), markup=False)
        else:
            self.console.print(for_terminal(reply.text), markup=False)
        if reply.debug:
            self.console.print(f"[bold]routing[/]: {reply.debug['routes']}\n[bold]calibration[/]: "
                               f"{reply.debug['calibration']}", highlight=False)
            self.console.print("[bold]prompt[/]")
            for m in reply.debug["messages"]:
                self.console.print(for_terminal(f"{m['role']}: {m['content']}"), markup=False, highlight=False)
            table = Table("id", "title", "vector", "cf", "fused", title="candidates")
            for c in reply.debug["candidates"]:
                table.add_row(Text(for_terminal(c["item_id"])), Text(for_terminal(c["title"])),
                              *(f"{c[key]:.3f}" for key in ("vector", "cf", "fused")))
            self.console.print(table)
            self.console.print(f"timings ms: {reply.debug['timings_ms']}")

    def _item(self, arg: str) -> str | None:
        state = self.agent.session(self.session_id)
        if arg.isdigit() and 1 <= int(arg) <= len(state.last):
            return state.last[int(arg) - 1]
        self.console.print(f"[red]No item {escape(repr(arg))} in the latest list[/] (1..{len(state.last)}).")
        return None

    def command(self, text: str) -> bool:
        """Handle a slash command; False means quit."""
        name, _, arg = text[1:].partition(" ")
        arg = arg.strip()
        sid = self.session_id
        if name in ("quit", "exit", "q"):
            return False
        if name == "help":
            self.console.print(HELP, markup=False)
        elif name in ("like", "dislike", "seen"):
            item = self._item(arg)
            if item:  # as a turn: a store that cannot be written says so and the chat goes on
                picked = item
                self.turn(lambda cancel, first, reason: self.agent.feedback(sid, picked, name, cancel))
        elif name == "why":
            item = self._item(arg)
            if item:
                self.turn(lambda cancel, first, reason: self.agent.explain(sid, item))
        elif name in ("more", "reset"):
            self.turn(self.chat(name))
        elif name == "filters":
            state = self.agent.session(sid)
            titles = self.agent.title_of
            self.console.print(for_terminal(f"user: {state.user_id or 'new (' + state.pseudonym + ')'}\n"
                                            f"filters: {'; '.join(state.describe()) or 'none'}\n"
                                            f"liked: {', '.join(map(titles, state.liked)) or '-'}\n"
                                            f"disliked: {', '.join(map(titles, state.disliked)) or '-'}\n"
                                            f"seen: {', '.join(map(titles, state.seen)) or '-'}\n"
                                            f"shown so far: {len(state.shown)}"), markup=False)
        elif name == "user":
            try:
                self.agent.session(sid, arg or None)
                self.console.print(f"now chatting as user {arg}" if arg else "now chatting as a new user",
                                   markup=False)
            except GenreAgentError as exc:
                self.console.print(f"[red]{escape(for_terminal(str(exc)))}[/]")
        elif name == "template" and arg == "reload":
            try:
                prompts = self.agent.reload_templates()
                self.console.print(f"reloaded templates from {prompts.directory}; the next answer uses them",
                                   markup=False)
            except GenreAgentError as exc:
                self.console.print(f"[red]{escape(for_terminal(str(exc)))}[/]")
        elif name == "debug":
            self.agent.debug = not self.agent.debug
            self.console.print(f"debug {'on' if self.agent.debug else 'off'}")
        else:
            self.console.print(f"Unknown command {text!r}. /help lists them.", markup=False)
        return True

