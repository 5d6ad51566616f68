# NGINX (Debian bookworm's packaged nginx 1.22) with ngx_stream_cql_module.
#
#   docker build -t nginx-cql .
#   docker run -p 9042:9042 -e CASSANDRA=cassandra.example:9042 nginx-cql
#
# The module is compiled against the nginx source and configure flags of the very nginx
# this image ships (nginx-dev), by scripts/build-for-debian-nginx; CI runs the same script
# on a Debian host and loads the result into Debian's own nginx binary in its tests.

FROM rust:1-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        nginx nginx-dev libnginx-mod-stream \
        libclang-dev clang libpcre2-dev libssl-dev zlib1g-dev make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN SYSTEM_NGINX=1 scripts/build-for-debian-nginx /out

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        nginx libnginx-mod-stream gettext-base \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sf /dev/stderr /var/log/nginx/error.log
COPY --from=build /out/ngx_stream_cql_module.so /usr/lib/nginx/modules/
# Debian loads modules-enabled/*.conf in order: the stream module (50-) before this one.
RUN echo 'load_module modules/ngx_stream_cql_module.so;' \
        > /etc/nginx/modules-enabled/60-mod-stream-cql.conf
COPY nginx-conf/docker/nginx.conf.template /etc/nginx/nginx.conf.template
ENV CASSANDRA=cassandra:9042
EXPOSE 9042
CMD ["/bin/sh", "-c", "envsubst '$CASSANDRA' < /etc/nginx/nginx.conf.template > /etc/nginx/nginx.conf && nginx -t && exec nginx -g 'daemon off;'"]
