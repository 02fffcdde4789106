#!/bin/sh
# TEST FIXTURE: the parts of the official redis image's entrypoint this project relies on: options
# alone mean redis-server; it runs as the redis user in /data; protected mode is off (the official
# image builds it off: it is reached from other containers and through a published port).
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi

if [ "$1" = 'redis-server' ]; then
    shift
    if [ "${1%.conf}" != "${1:-}" ]; then  # a config file must stay the first argument
        conf="$1"; shift
        set -- redis-server "$conf" --protected-mode no "$@"
    else
        set -- redis-server --protected-mode no "$@"
    fi
    if [ "$(id -u)" = '0' ]; then
        find . \! -user redis -exec chown redis '{}' +
        exec setpriv --reuid=redis --regid=redis --init-groups "$@"
    fi
fi
exec "$@"
