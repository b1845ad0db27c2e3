# lotsenbot container image.
#
#   docker build -t lotsenbot .
#   docker run -d --name lotsenbot --stop-timeout 30 \
#     -v "$PWD/config.toml:/config/config.toml:ro" -v lotsenbot-data:/data \
#     -e LOTSENBOT_MATRIX_PASSWORD=… lotsenbot
#
# In config.toml absolute paths into the volume are needed, because relative paths are relative
# to the (read-only) config file:  [matrix] store_path = "/data/store",
# [database] path = "/data/lotsenbot.db".  Details: docs/betrieb.md.

# -- build: a virtualenv with the package (compilers stay in this stage) ---------------------
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/lotsenbot
WORKDIR /src
COPY pyproject.toml README.md ./
COPY lotsenbot ./lotsenbot
RUN /opt/lotsenbot/bin/pip install --no-cache-dir --disable-pip-version-check .

# -- runtime: same base image, so the copied virtualenv finds its Python ------------------------
FROM python:3.11-slim
ENV PATH=/opt/lotsenbot/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOTSENBOT_CONFIG=/config/config.toml
COPY --from=build /opt/lotsenbot /opt/lotsenbot
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin lotsenbot \
    && mkdir -p /data /config \
    && chown lotsenbot:lotsenbot /data \
    && chmod 0700 /data
USER lotsenbot
WORKDIR /data
VOLUME ["/data"]
CMD ["lotsenbot", "run", "--config", "/config/config.toml"]
