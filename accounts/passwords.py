"""Password acceptance after NIST SP 800-63B §5.1.1.2: at least 8 characters, any characters allowed, and
refused when it is commonly used, repetitive or sequential, or built from the account's own context
(username, display name, the service's name). Pure; no composition rules, no expiry."""
from __future__ import annotations

import re

MIN_LENGTH = 8
SERVICE_WORDS = ("fieldproof", "地推")
# The most common passwords of length >= 8 in public breach corpora (short ones fail the length rule anyway).
COMMON = frozenset("""
12345678 123456789 1234567890 password password1 password123 passw0rd p@ssw0rd qwertyuiop qwerty123 qwerty12
11111111 00000000 88888888 66666666 12341234 11223344 87654321 abcd1234 1qaz2wsx zaq12wsx qazwsxedc 1q2w3e4r
1q2w3e4r5t iloveyou iloveyou1 sunshine princess football baseball welcome1 welcome123 admin123 administrator
letmein1 trustno1 superman starwars whatever dragon123 monkey123 computer internet michael1 charlie1 jennifer
woaini520 woaini1314 5201314520 a1234567 aa123456 abc12345 abc123456 asdfghjk asdfasdf zxcvbnm1 zxcvbnmm
qwertyui 1234qwer qwer1234 asdf1234 password! changeme changeme1 secret123 default1 test1234 testtest
""".split())


def problem(password: str, *, username: str = "", display_name: str = "") -> str | None:
    """Why this password is refused (a sentence for the user), or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"Passwords need at least {MIN_LENGTH} characters."
    folded = password.casefold()
    bare = re.sub(r"\s+", "", folded)
    if not bare:
        return "A password cannot be only spaces."
    if folded.strip() in COMMON or bare in COMMON:
        return "This password is one of the most commonly used; choose another."
    if len(set(bare)) <= 2 or _sequential(bare):
        return "This password is too repetitive or sequential (like 'aaaaaaaa' or '12345678'); choose another."
    for word in (username, display_name, *SERVICE_WORDS):
        w = (word or "").casefold().strip()
        if len(w) >= 3 and (w in folded and len(bare) - len(w) < 4):
            return "The password must not be based on your username, your name or the service's name."
    return None


def _sequential(s: str) -> bool:
    steps = {ord(b) - ord(a) for a, b in zip(s, s[1:])}
    return len(steps) == 1 and steps <= {-1, 0, 1}
