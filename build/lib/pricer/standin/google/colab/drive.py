"""`drive.mount` as Colab has it: prints what Colab prints; the lab folder itself is PRICER_LAB_DIR."""

import os

MOUNTED = []


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    if mountpoint in MOUNTED and not force_remount:
        print(f'Drive already mounted at {mountpoint}; to attempt to forcibly remount, call '
              f'drive.mount("{mountpoint}", force_remount=True).')
        return
    MOUNTED.append(mountpoint)
    print(f"Mounted at {mountpoint} (stand-in: the Drive folder is {os.environ.get('PRICER_LAB_DIR')})")


def flush_and_unmount(timeout_ms=24 * 60 * 60 * 1000):
    MOUNTED.clear()
