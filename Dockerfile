# tgjobs: the API, the workers and the CLI in one image.
#   docker build -t tgjobs .
#   docker run --rm -e REDIS_URL=redis://host:6379/0 tgjobs tgjobs status
# docker-compose.yml runs Redis, the API and scalable workers from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The package installed from the repo (not editable): only what the wheel needs.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY processors ./processors
COPY sink ./sink
COPY api ./api
COPY config ./config
COPY cli ./cli
RUN pip install . && rm -rf /src/build /src/*.egg-info

# Never root: a fixed uid, a home for the data dir, no shell history of secrets.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin tgjobs
USER tgjobs
WORKDIR /home/tgjobs
ENV DATA_DIR=/home/tgjobs/.data \
    LOG_FORMAT=json

# 3000: the API (API_PORT); 9100: a worker's /metrics (METRICS_PORT).
EXPOSE 3000 9100
CMD ["tgjobs", "api", "--host", "0.0.0.0"]
