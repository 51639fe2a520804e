"""brushwork studio: a local web app over :func:`brushwork.stylize`.

``brushwork studio`` serves a page (upload a photo and paintings, set the options, watch
the picture being painted, a queue, a gallery) and the HTTP API behind it.  Modules:

* ``server``   the data folder, the listening socket, serving until Ctrl-C
* ``app``      ``create_app(data_dir, ...)``: the FastAPI application, put together
* ``routes``   its HTTP routes, one router per concern (page, uploads, jobs, events)
* ``options``  what a request may set (derived from Settings) and the studio's limits
* ``job``      one job and its JSON (the one serialiser, for memory and store alike)
* ``job_queue`` the queue: waiting jobs, the running one, every change of state
* ``worker``   the one thread that paints the jobs, in order
* ``events``   the event broker (fan-out) and publisher (pacing) for the live page
* ``store``    the gallery's store: SQLite index and the files under the data folder
* ``uploads``  checking uploaded images (bytes, pixels, a full decode) and re-encoding them
* ``decoder``  that decode, in a child process bounded in time and memory
* ``security`` Host / Origin / body-size checks on every request

The ``brushwork studio`` command (brushwork.commands.studio) checks its options and
calls :func:`~brushwork.studio.server.serve`.  Importing this package does not import
the web framework; ``app`` does.
"""
