"""SFTP for a machine, so `SSHClient.open_sftp()` works as it does on vast.

Paths resolve like they do for exec'd commands: relative paths are under the machine's disk
(its home and working directory), absolute paths are this host's paths.
"""

from __future__ import annotations

import functools
import os

import paramiko
from paramiko.sftp import SFTP_OK


def _sftp_errors(method):
    """Turn OSErrors into the SFTP status codes the client understands."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    return wrapper


class _DiskHandle(paramiko.SFTPHandle):
    def __init__(self, path: str, file, flags: int):
        super().__init__(flags)
        self.filename = path
        self.readfile = file
        self.writefile = file

    @_sftp_errors
    def stat(self):
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))

    @_sftp_errors
    def chattr(self, attr):
        paramiko.SFTPServer.set_file_attr(self.filename, attr)
        return SFTP_OK


class DiskSFTP(paramiko.SFTPServerInterface):
    def __init__(self, server, home: str, *args, **kwargs):
        super().__init__(server, *args, **kwargs)
        self.home = home

    def _path(self, path: str) -> str:
        return os.path.normpath(os.path.join(self.home, path))

    def canonicalize(self, path: str) -> str:
        return self._path(path)

    @_sftp_errors
    def list_folder(self, path):
        folder = self._path(path)
        return [
            paramiko.SFTPAttributes.from_stat(os.lstat(os.path.join(folder, name)), filename=name)
            for name in os.listdir(folder)
        ]

    @_sftp_errors
    def stat(self, path):
        return paramiko.SFTPAttributes.from_stat(os.stat(self._path(path)))

    @_sftp_errors
    def lstat(self, path):
        return paramiko.SFTPAttributes.from_stat(os.lstat(self._path(path)))

    @_sftp_errors
    def open(self, path, flags, attr):
        full = self._path(path)
        mode = attr.st_mode if attr is not None and attr.st_mode is not None else 0o666
        fd = os.open(full, flags, mode & 0o7777)
        return _DiskHandle(full, os.fdopen(fd, _file_mode(flags)), flags)

    @_sftp_errors
    def remove(self, path):
        os.remove(self._path(path))
        return SFTP_OK

    @_sftp_errors
    def rename(self, oldpath, newpath):
        os.rename(self._path(oldpath), self._path(newpath))
        return SFTP_OK

    @_sftp_errors
    def posix_rename(self, oldpath, newpath):
        os.replace(self._path(oldpath), self._path(newpath))
        return SFTP_OK

    @_sftp_errors
    def mkdir(self, path, attr):
        full = self._path(path)
        os.mkdir(full)
        if attr is not None:
            paramiko.SFTPServer.set_file_attr(full, attr)
        return SFTP_OK

    @_sftp_errors
    def rmdir(self, path):
        os.rmdir(self._path(path))
        return SFTP_OK

    @_sftp_errors
    def chattr(self, path, attr):
        paramiko.SFTPServer.set_file_attr(self._path(path), attr)
        return SFTP_OK

    @_sftp_errors
    def symlink(self, target_path, path):
        os.symlink(target_path, self._path(path))
        return SFTP_OK

    @_sftp_errors
    def readlink(self, path):
        return os.readlink(self._path(path))


def _file_mode(flags: int) -> str:
    append = "a" if flags & os.O_APPEND else ""
    if flags & os.O_RDWR:
        return "a+b" if append else "r+b"
    if flags & os.O_WRONLY:
        return "ab" if append else "wb"
    return "rb"
