"""The one exception hierarchy of graphc: every bad graph or bad feed, or a backend that
cannot build one, raises a GraphError."""


class GraphError(Exception):
    """Base class: something about a graph, its nodes or its feeds is wrong."""


class ShapeError(GraphError):
    """Shapes do not fit: broadcasting, matmul inner dimensions, reshape sizes, feeds."""


class DtypeError(GraphError):
    """A dtype is unknown, or not allowed where it is used (a gradient of an integer)."""


class OpError(GraphError):
    """An unknown op, a wrong number of arguments, or a bad op attribute."""


class ExprError(GraphError):
    """A `map` expression that cannot be parsed or names a symbol that is not an argument."""


class CycleError(GraphError):
    """The graph is not acyclic; the message lists the cycle."""


class DuplicateNameError(GraphError):
    """Two nodes were given the same name."""


class FeedError(GraphError):
    """A feed is missing, unexpected, of the wrong shape or dtype, or not finite."""


class GradError(GraphError):
    """A gradient that cannot be taken: non-scalar loss, integer wrt, missing rule."""


class CheckpointError(FeedError):
    """A checkpoint file that cannot be loaded into this graph: a pickle, corrupt or truncated,
    or names, shapes or dtypes that differ from the graph's parameters. (A FeedError: loading
    raised FeedError before checkpoints had their own class.)"""


class CCompilerMissing(GraphError):
    """backend='c' was asked for, but there is no C compiler (cc, gcc or $CC) to build it."""


class CCompileError(GraphError):
    """The C compiler rejected a generated source (or timed out); the message names the C line,
    the kernel and the graph node it computes."""
