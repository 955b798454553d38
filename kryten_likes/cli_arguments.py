"""The command line's argument types: each turns the text a person typed
into a value, or refuses it with a message argparse prints beside the usage.
"""

from __future__ import annotations

import argparse
import re

from kryten_likes.contract import NAMESPACE_PATTERN

__all__ = ["CONFIG_NAMESPACE", "BadInput", "limit", "namespace", "positive_seconds", "whole_number"]

# Stands for "the namespace of the config" when `--namespace` has no value.
CONFIG_NAMESPACE = "\0config"


class BadInput(Exception):
    """A file named on the command line cannot be used."""


def positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return seconds


def limit(text: str) -> int:
    if not re.fullmatch(r"\d+", text) or not 1 <= int(text) <= 100:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 100: {text!r}")
    return int(text)


def whole_number(text: str) -> int:
    if not re.fullmatch(r"\d+", text):
        raise argparse.ArgumentTypeError(f"must be a whole number (0 or more): {text!r}")
    return int(text)


def namespace(text: str) -> str:
    if text != CONFIG_NAMESPACE and NAMESPACE_PATTERN.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(f"must match {NAMESPACE_PATTERN.pattern}: {text!r}")
    return text
