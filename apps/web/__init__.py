"""The top layer: the instance's API, pages and admin page.

An instance's page and API show every layer at once (its agent, its race, its snapshots, its
wake) and act on several (pause and destroy in apps.instances, wake and the idle policy in
apps.hibernation), so they live here, above them all. Apps whose HTTP concerns only themselves
keep it (apps.snapshots, apps.billing, the agents' heartbeat endpoint in apps.agents).

    api.py, serializers.py, urls.py      /api/v1/instances...
    views.py, forms.py, page_urls.py     the HTML pages (htmx), sparkline.py draws the GPU chart
    admin.py                             the Instance admin page and its actions
"""
