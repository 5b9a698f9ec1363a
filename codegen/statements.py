"""Statement records of generated host code (the NumPy module's run()): a backend lowers
its work to these first, decides destinations, scratch buffers and in-place updates on
what each record reads and writes, and prints text last (`source()`)."""
from __future__ import annotations

from dataclasses import dataclass, replace


def _noted(text: str, note: str) -> str:
    return f"{text}  # {note}" if note else text


@dataclass(frozen=True)
class Call:
    """`fn(*args, k=v, ..., out=out)`: writes the buffer `out`; `args` and the `kw`
    values are source text, buffer names or literals."""
    fn: str
    args: tuple
    out: str
    kw: tuple = ()      # (name, value) pairs, printed before out=
    note: str = ""

    def reads(self) -> tuple:
        return self.args + tuple(v for _, v in self.kw)

    def writes(self) -> tuple:
        return (self.out,)

    def renamed(self, old: str, new: str) -> Call:
        swap = {old: new}.get
        return replace(self, args=tuple(swap(a, a) for a in self.args),
                       out=swap(self.out, self.out), kw=tuple((k, swap(v, v)) for k, v in self.kw))

    def source(self) -> str:
        parts = [*self.args, *(f"{k}={v}" for k, v in self.kw), f"out={self.out}"]
        return _noted(f"{self.fn}({', '.join(parts)})", self.note)


@dataclass(frozen=True)
class Copy:
    """`np.copyto(dest, src)`, or with `where` only where it holds: then dest's other
    elements are kept, so the copy reads dest too."""
    dest: str
    src: str
    where: str = ""
    note: str = ""

    def reads(self) -> tuple:
        return (self.src,) + ((self.where, self.dest) if self.where else ())

    def writes(self) -> tuple:
        return (self.dest,)

    def renamed(self, old: str, new: str) -> Copy:
        swap = {old: new}.get
        return replace(self, dest=swap(self.dest, self.dest), src=swap(self.src, self.src),
                       where=swap(self.where, self.where))

    def source(self) -> str:
        where = f", where={self.where}" if self.where else ""
        return _noted(f"np.copyto({self.dest}, {self.src}{where})", self.note)


@dataclass(frozen=True)
class Assign:
    """`name = value`: a local bound to a view, a buffer of `buf`, a parameter, another
    name; `value` is source text, `of` the local names it reads."""
    name: str
    value: str
    note: str = ""
    of: tuple = ()

    def reads(self) -> tuple:
        return self.of

    def writes(self) -> tuple:
        return ()   # binds a name; no buffer's elements change

    def renamed(self, old: str, new: str) -> Assign:
        return self

    def source(self) -> str:
        return _noted(f"{self.name} = {self.value}", self.note)


@dataclass(frozen=True)
class Comment:
    """A comment line of its own."""
    text: str

    def reads(self) -> tuple:
        return ()

    def writes(self) -> tuple:
        return ()

    def renamed(self, old: str, new: str) -> Comment:
        return self

    def source(self) -> str:
        return f"# {self.text}"


Statement = Call | Copy | Assign | Comment


def renamed(statements: list, old: str, new: str) -> list:
    """The statements with buffer `old` read and written as `new` instead."""
    return [s.renamed(old, new) for s in statements]


def read_after_write(statements: list, written: str, read: str) -> bool:
    """Whether a statement after the first one writing `written` reads `read`: writing
    `read`'s storage as `written` would then change a value still to be read."""
    first = next((i for i, s in enumerate(statements) if written in s.writes()), None)
    return first is not None and any(read in s.reads() for s in statements[first + 1:])


def source(statements: list) -> list:
    """The statements as lines of text."""
    return [s.source() for s in statements]
