"""The web page: server-rendered HTML with inline SVG charts, nothing fetched at run time.

`set_view` gathers what the page shows of a set from the payloads the API serves (the costly
ones kept per fit id in a `PageCache`); `index_page`, `set_page` and `message_page` render it.
"""

from service.page.html import index_page, message_page, set_page
from service.page.views import WATCH_PERIODS, PageCache, SetView, set_view

__all__ = ["WATCH_PERIODS", "PageCache", "SetView", "index_page", "message_page", "set_page",
           "set_view"]
