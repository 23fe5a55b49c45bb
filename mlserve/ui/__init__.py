"""`mlserve ui`: a local web page that draws a digit, asks a served model, and shows the server live.

    app.py        the Starlette app: the page, /api/info, /api/predict, /api/live
    backend.py    the one model server it talks to (REST, or gRPC for predict): versions, labels, predict
    livemetrics.py  the server's Prometheus page read into requests/s, p50/p99, errors
    static/       the page itself: plain HTML, CSS and JavaScript, shipped in the package

The app proxies only to the server it was started for; the page never names a URL.
"""
