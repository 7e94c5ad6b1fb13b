# Only a pointer: twistd imports every plugin module, so this one must be
# cheap.  The options and service live in txtlsjson.tap.
from twisted.application.service import ServiceMaker

tlsjson = ServiceMaker(
    "tls-json server",
    "txtlsjson.tap",
    "A tls-json server: JSON messages both ways over TLS after a password exchange.",
    "tlsjson",
)
