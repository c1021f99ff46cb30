"""Personal data in web text: email addresses and public IP addresses replaced by placeholders.

The patterns are datatrove's PIIFormatter's (an RFC 5322-like address; four dotted numbers of 0-255). As
there, an IP address is replaced only where it is public: private (10/8, 172.16/12, 192.168/16), loopback,
link-local, multicast and reserved addresses are kept, since they name no one (a router's 192.168.0.1 in a
manual). Unlike datatrove, which draws each replacement at random from a few, the placeholders are fixed,
so that a document cleans to the same text on every run: `email@example.com` (RFC 2606's example domain)
and `192.0.2.1` (RFC 5737's documentation range).
"""

import ipaddress
import re

EMAIL = re.compile(
    r"\b[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@"
    r"(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"|\[(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\])"
)
# not inside a longer run of dotted numbers (a version 1.2.3.4.5), which datatrove's pattern would cut
IP = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)(?!\.?\d)"
)
PLACEHOLDERS = {"email": "email@example.com", "ip": "192.0.2.1"}


def is_public(address):
    ip = ipaddress.ip_address(address)
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved)


def replace_pii(text):
    """(text with emails and public IPs replaced, {kind: replacements})."""
    counts = {"email": 0, "ip": 0}
    if "@" in text:
        text, counts["email"] = EMAIL.subn(PLACEHOLDERS["email"], text)
    if "." in text:

        def public(match):
            if not is_public(match.group()):
                return match.group()
            counts["ip"] += 1
            return PLACEHOLDERS["ip"]

        text = IP.sub(public, text)
    return text, counts
