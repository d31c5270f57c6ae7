#!/bin/sh
# The nightly backup in a container, its failure mailed by postbud (installed in
# the image with pip). docker reads the env file on the host, line by line, and
# passes each value as written. The spool is on a volume, so a failure mail that
# could not go out outlives the container and goes out with the next run.
exec docker run --rm \
    --env-file "$HOME/.config/postbud.env" \
    --env POSTBUD_SPOOL=/var/spool/postbud/outbox.sqlite \
    --volume postbud-spool:/var/spool/postbud \
    backup-image \
    postbud run --to oncall@example.com -- /usr/local/bin/backup.sh
