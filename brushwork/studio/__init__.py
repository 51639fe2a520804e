"""brushwork studio: a local web app over :func:`brushwork.stylize`.

``brushwork studio`` serves a page (upload a photo and paintings, set the options, watch
the picture being painted, a queue, a gallery) and the HTTP API behind it.  Modules:

* ``cli``      the ``studio`` subcommand: options, binding, start and clean stop
* ``app``      ``create_app(data_dir, ...)``: the FastAPI application, put together
* ``routes``   its HTTP routes, one router per concern (page, uploads, jobs, events)
* ``options``  what a request may set (derived from Settings) and the studio's limits
* ``job``      one job and its JSON (the one serialiser, for memory and store alike)
* ``jobs``     the queue: waiting jobs, the running one, every change of state
* ``worker``   the one thread that paints the jobs, in order
* ``events``   the event broker (fan-out) and publisher (pacing) for the live page
* ``gallery``  the store: SQLite index and the files under the data folder
* ``uploads``  checking uploaded images (bytes, pixels, a full decode) and re-encoding them
* ``decoder``  that decode, in a child process bounded in time and memory
* ``security`` Host / Origin / body-size checks on every request

Importing this package does not import the web framework; ``app`` does.
"""

from .cli import add_parser, default_data_dir, run

__all__ = ["add_parser", "run", "default_data_dir"]
