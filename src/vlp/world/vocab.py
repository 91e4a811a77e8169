"""The world's vocabulary: the only shapes, colours, sizes, relations and number words it uses,
and the generator version that seeds every random stream.
"""

from __future__ import annotations

GENERATOR_VERSION = 2  # 2: downstream task files

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles",
           "diamond": "diamonds", "star": "stars", "cross": "crosses"}
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 180, 70), "blue": (50, 100, 235),
    "yellow": (240, 220, 50), "purple": (150, 70, 210), "orange": (250, 140, 30),
    "pink": (250, 130, 190), "white": (245, 245, 245),
}
SIZES = ("small", "medium", "large")
# side of a shape's box as a fraction of the image side; small enough that six shapes fit
SIZE_FRACTIONS = {"small": 0.14, "medium": 0.2, "large": 0.28}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
RELATIONS = ("left of", "right of", "above", "below")
RELATION_PHRASES = {"left of": "to the left of", "right of": "to the right of",
                    "above": "above", "below": "below"}
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
SUPERCATEGORY = "shape"
MIN_OBJECTS, MAX_OBJECTS = 2, 6
MIN_SIZE, MAX_SIZE = 32, 1024


def category_id(shape: str) -> int:
    """The COCO category id of ``shape`` (1-based position in :data:`SHAPES`)."""
    return SHAPES.index(shape) + 1


def number_word(n: int) -> str:
    """``n`` as a word ("zero" … "six"), else digits."""
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def with_article(words: str) -> str:
    """``words`` with its indefinite article ("a circle", "an orange star")."""
    return ("an " if words[0] in "aeiou" else "a ") + words
