"""URL lists: documents from blocked sites dropped, by exact URL, by host and its subdomains, or by
registered domain (the domain under its public suffix: `news.bbc.co.uk` -> `bbc.co.uk`, from tldextract's
suffix list as the package ships it: no internet).

A list file holds one entry per line (blank lines and `#` comments left out): a URL with a scheme
(`https://example.com/page`, matched exactly, without its fragment) or a domain (`example.com`, which
matches example.com and every subdomain of it). An `allow` list names the exceptions to `block`.
"""

import functools
import urllib.parse


@functools.cache
def extractor():
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)  # the bundled snapshot only


def read_list(path):
    """(URLs, domains) of a list file, lowercase."""
    urls, domains = set(), set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            entry = line.split("#", 1)[0].strip().lower()
            if "://" in entry:
                urls.add(entry.split("#", 1)[0])
            elif entry:
                domains.add(entry.strip("."))
    return urls, domains


def host_of(url):
    return (urllib.parse.urlsplit(url).hostname or "").lower().rstrip(".")


def matches(url, lists):
    """Whether a URL is in (URLs, domains): exactly, by its host or a parent domain of it (subdomains), or by
    its registered domain."""
    urls, domains = lists
    url = url.strip().lower().split("#", 1)[0]
    if url in urls:
        return True
    host = host_of(url)
    parts = host.split(".")
    if any(".".join(parts[i:]) in domains for i in range(len(parts))):
        return True
    registered = extractor()(host).top_domain_under_public_suffix
    return bool(registered) and registered in domains


class UrlFilter:
    """`clean.urls`: the drop reason of a document by its meta's `url`, or None."""

    def __init__(self, cfg):
        self.block = read_list(cfg["block"]) if cfg.get("block") else (set(), set())
        self.allow = read_list(cfg["allow"]) if cfg.get("allow") else (set(), set())

    def __call__(self, doc, stats):
        url = (doc.get("meta") or {}).get("url")
        if not url:
            stats["urls"]["without a url"] += 1
            return None
        if matches(url, self.allow):
            stats["urls"]["allowed"] += 1
            return None
        if matches(url, self.block):
            return "urls.block"
        return None
