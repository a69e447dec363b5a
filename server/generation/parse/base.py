"""The interface every output parser implements, and the parser for plain text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from server.generation.choice import Piece
from server.generation.parse.pieces import OutputPiece

__all__ = ["OutputParser", "PassThrough"]


class OutputParser(Protocol):
    """Fed one choice's released text in order; one parser per choice, so it may keep state."""

    def feed(self, piece: Piece) -> Sequence[OutputPiece]:
        """The pieces `piece` completes; text a parser is not yet sure about may be held back."""
        ...

    def finish(self) -> Sequence[OutputPiece]:
        """Everything still held back, once the choice has ended."""
        ...


class PassThrough:
    """Output as plain text, piece for piece: what every model gets until it declares a tool or reasoning
    format."""

    __slots__ = ()

    def feed(self, piece: Piece) -> Sequence[OutputPiece]:
        return (piece,)

    def finish(self) -> Sequence[OutputPiece]:
        return ()
