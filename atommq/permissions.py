"""Who a Unix user is, and whether they may read, write or run a path on this host (with every
folder above it). Knows nothing of AtomMQ: no settings, no checks, no fixes to suggest.
"""

import dataclasses
import grp
import os
import pwd
import stat
from pathlib import Path

R, W, X = os.R_OK, os.W_OK, os.X_OK


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    groups: frozenset[int]
    home: str

    @property
    def is_me(self) -> bool:
        return self.uid == os.geteuid()

    @property
    def owner(self) -> str:
        """USER:GROUP, for chown."""
        return f"{self.name}:{grp.getgrgid(self.gid).gr_name}"


def find_user(name: str | None = None) -> User:
    """The named user, or the current one; KeyError for an unknown name."""
    entry = pwd.getpwuid(os.geteuid()) if name is None else pwd.getpwnam(name)
    groups = frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return User(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)


def allows(user: User, path: str, want: int) -> bool:
    """May `user` read/write/execute `path` itself (not counting the folders above it)? For
    another user, from file modes, owners and that user's groups: ACLs are not read."""
    if user.is_me:  # the kernel knows best: ACLs, read-only mounts
        return os.access(path, want, effective_ids=True)
    st = os.stat(path)
    mode = st.st_mode
    if user.uid == 0:  # root may do anything, but runs only what has some x bit
        return not (want & X and not stat.S_ISDIR(mode) and not mode & 0o111)
    shift = 6 if st.st_uid == user.uid else 3 if st.st_gid in user.groups else 0
    return (mode >> shift) & want == want


def describe(path: str) -> str:
    """The path with its mode and owner, for a message."""
    st = os.stat(path)
    try:
        owner = f"{pwd.getpwuid(st.st_uid).pw_name}:{grp.getgrgid(st.st_gid).gr_name}"
    except KeyError:
        owner = f"{st.st_uid}:{st.st_gid}"
    return f"{path} (mode {stat.S_IMODE(st.st_mode):04o}, owner {owner})"


def blocker(user: User, path: str, want: int) -> str | None:
    """What stops `user` from using `path` with `want` (each folder above needs x), or None."""
    absolute = os.path.abspath(path)
    parts = Path(absolute).parts
    for depth in range(1, len(parts)):
        folder = os.path.join(*parts[:depth])
        if not allows(user, folder, X):
            return f"folder {describe(folder)} cannot be entered"
    if not os.path.exists(absolute):
        return f"{absolute} does not exist"
    if not allows(user, absolute, want):
        verb = "written" if want & W else "run" if want & X and not os.path.isdir(absolute) else "read"
        return f"{describe(absolute)} cannot be {verb}"
    return None
