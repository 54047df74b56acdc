"""blendfarm: a Blender render farm for a LAN."""

__version__ = "0.1.0"
