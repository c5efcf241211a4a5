"""The dashboard: HTML pages (one shell; the page scripts fetch the JSON twins), login by cookie,
and static files (our JS/CSS and Plotly.js from the installed `plotly` package, so it works
offline). Page URLs carry the whole view state in their query, so a link reproduces a view."""

from .pages import router

__all__ = ["router"]
