"""Managed kernel arguments: what a profile asks for on one host, and minimal edits of a cmdline.

We add and remove only the arguments we manage; every other token keeps its place and spelling.
Tokenising and keys come from `reconciler.model.cmdline` (quotes, `-`/`_` in module names).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

from reconciler.model.cmdline import Token, arg_key, parse_token, tokenize
from reconciler.model.facts import CpuVendor
from reconciler.spec.model import KernelSpec

# Architectures where the engine adds no IOMMU argument (shared/ovirt-api.md § 1.2).
NO_IOMMU_ARCH = frozenset({"ppc64", "ppc64le", "s390x"})
IOMMU_KEYS = ("intel_iommu", "amd_iommu")


@dataclass(frozen=True)
class KernelWant:
    """One managed argument. `token` set: it must be present (other values of the key are removed
    when `exclusive`); `token` None: tokens with `key` (and value `value`, when given) must go."""

    key: str
    token: str | None = None
    exclusive: bool = True
    value: str | None = None

    @cached_property
    def parsed(self) -> Token | None:
        return parse_token(self.token) if self.token is not None else None

    def matches(self, tok: Token | str) -> bool:
        """True when `tok` is a token this want governs (same key; same value for value-scoped)."""
        if isinstance(tok, str):
            tok = parse_token(tok)
        if tok.key != self.key:
            return False
        if self.parsed is None:
            return self.value is None or tok.value == self.value
        if self.exclusive:
            return True
        return tok.same_arg(self.parsed)

    def is_desired(self, tok: Token) -> bool:
        return self.parsed is not None and tok.same_arg(self.parsed)

    def describe(self) -> str:
        if self.token is not None:
            return self.token
        return f"-{self.key}={self.value}" if self.value is not None else f"-{self.key}"


@dataclass(frozen=True)
class KernelWants:
    wants: tuple[KernelWant, ...] = ()
    problem: str | None = None       # e.g. unknown CPU vendor: the host is blocked

    @property
    def add_tokens(self) -> tuple[str, ...]:
        return tuple(w.token for w in self.wants if w.token is not None)

    @property
    def absent_keys(self) -> tuple[str, ...]:
        return tuple(w.key if w.value is None else f"{w.key}={w.value}"
                     for w in self.wants if w.token is None)


def wants_for(spec: KernelSpec, vendor: CpuVendor | None, architecture: str | None,
              vendor_note: str | None = None) -> KernelWants:
    """Translate a merged kernel spec for one host into argument wants (order: the Kernel tab's)."""
    wants: list[KernelWant] = []
    problem: str | None = None
    arch = (architecture or "").lower()
    if spec.blacklist_nouveau is True and arch != "s390x":
        wants.append(KernelWant("rdblacklist", "rdblacklist=nouveau", exclusive=False))
    elif spec.blacklist_nouveau is False:
        wants.append(KernelWant("rdblacklist", None, value="nouveau"))
    if spec.iommu is True and arch not in NO_IOMMU_ARCH and vendor not in ("ibm", "ibms390"):
        if vendor == "intel":
            wants.append(KernelWant("intel_iommu", "intel_iommu=on"))
        elif vendor == "amd":
            wants.append(KernelWant("amd_iommu", "amd_iommu=on"))
        else:
            problem = ("kernel.iommu is true but the host's CPU vendor is unknown"
                       + (f" ({vendor_note})" if vendor_note else "")
                       + "; set the cluster's CPU type so that intel_iommu or amd_iommu can be chosen")
    elif spec.iommu is False:
        wants.extend(KernelWant(k, None) for k in IOMMU_KEYS)
    if spec.iommu_passthrough is True:
        wants.append(KernelWant("iommu", "iommu=pt"))
    elif spec.iommu_passthrough is False:
        wants.append(KernelWant("iommu", None, value="pt"))
    if spec.pci_stub:
        wants.append(KernelWant(arg_key("pci-stub.ids"), "pci-stub.ids=" + ",".join(spec.pci_stub)))
    elif spec.pci_stub is not None:
        wants.append(KernelWant(arg_key("pci-stub.ids"), None))
    for raw in spec.extra_args:
        wants.append(KernelWant(arg_key(raw), raw, exclusive="=" in raw))
    return KernelWants(tuple(wants), problem)


@lru_cache(maxsize=1024)
def tokens_of(cmdline: str | None) -> tuple[Token, ...]:
    """The tokens of a command line, parsed once per distinct line: a fleet's hosts share a few
    lines, and planning reads each host's lines several times (tokenizing was a tenth of a
    1,000-host plan). Tokens are frozen, so the same ones can be handed out again."""
    return tuple(tokenize(cmdline))


def edit_cmdline(current: str | None, wants: Iterable[KernelWant]) -> str:
    """Apply the wants to `current`: keep every other token as found, append what is missing."""
    tokens: Sequence[Token] = tokens_of(current)
    for want in wants:
        if want.parsed is None:
            tokens = [t for t in tokens if not want.matches(t)]
            continue
        present = False
        kept: list[Token] = []
        for tok in tokens:
            if want.matches(tok):
                if want.is_desired(tok):
                    if not present:
                        present = True
                        kept.append(tok)
                elif not want.exclusive:
                    kept.append(tok)
                continue
            kept.append(tok)
        if not present:
            kept.append(want.parsed)
        tokens = kept
    return " ".join(t.raw for t in tokens)


def unmet(cmdline: str | None, wants: Sequence[KernelWant]) -> tuple[str, ...]:
    """The wants a (booted) command line does not satisfy, described as tokens or `-key`."""
    tokens = tokens_of(cmdline)
    missing: list[str] = []
    for want in wants:
        if want.parsed is None:
            if any(want.matches(t) for t in tokens):
                missing.append(want.describe())
            continue
        if not any(want.is_desired(t) for t in tokens):
            missing.append(want.describe())
        elif want.exclusive and any(want.matches(t) and not want.is_desired(t) for t in tokens):
            missing.append(want.describe())
    return tuple(missing)


def unwanted_tokens(cmdline: str | None, wants: Sequence[KernelWant]) -> tuple[str, ...]:
    """Tokens of `cmdline` the wants remove (absent keys, other values of exclusive keys), as
    written, so that a check can look for exactly those tokens after a reboot."""
    out: list[str] = []
    for tok in tokens_of(cmdline):
        if any(want.matches(tok) and not want.is_desired(tok) for want in wants):
            out.append(tok.raw)
    return tuple(dict.fromkeys(out))
