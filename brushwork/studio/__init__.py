"""brushwork studio: a local web app over :func:`brushwork.stylize`.

``brushwork studio`` serves a page (upload a photo and paintings, set the options, watch
the picture being painted, a queue, a gallery) and the HTTP API behind it.  Modules:

* ``cli``      the ``studio`` subcommand: options, binding, start and clean stop
* ``app``      ``create_app(data_dir, ...)``: the FastAPI application and its routes
* ``jobs``     the queue, its one worker thread, option checks, the event broker
* ``gallery``  SQLite index and the files under the data folder
* ``uploads``  checking uploaded images (bytes, pixels, a full decode)
* ``security`` Host / Origin / body-size checks on every request

Importing this package does not import the web framework; ``app`` does.
"""

from .cli import add_parser, default_data_dir, run

__all__ = ["add_parser", "run", "default_data_dir"]
