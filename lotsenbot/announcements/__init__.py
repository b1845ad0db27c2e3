"""Announcements from coordinators to pilots, departments, rooms or everyone (issue 6)."""

from lotsenbot.announcements.feature import AnnouncementsFeature

__all__ = ["AnnouncementsFeature"]
