"""A module that configures logging itself: the runtime must leave its configuration alone."""
import logging

logging.basicConfig(level=logging.WARNING, format="CONFIGURED %(levelname)s %(name)s: %(message)s")
log = logging.getLogger("configured")


def process(payload):
    log.info("info is below the user's own level")
    log.warning("warning in the user's format")
    return payload
