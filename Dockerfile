# Signpost: API, scheduler and CLI in one image (docker-compose.yml picks the command).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SIGNPOST_VAR_DIR=/var/lib/signpost

# pytensor compiles C for parts of the model: without a C++ compiler it falls back to slow Python.
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY indicators ./indicators
COPY priors ./priors
COPY forecast ./forecast
COPY service ./service
RUN pip install .

# Run as a non-root user; the compile cache, fit artifacts (and SQLite, if used) go to the volume.
RUN useradd --system --create-home --uid 10001 signpost \
 && mkdir -p /var/lib/signpost \
 && chown signpost:signpost /var/lib/signpost
USER signpost
VOLUME ["/var/lib/signpost"]

EXPOSE 8000
CMD ["signpost", "serve", "--host", "0.0.0.0", "--port", "8000"]
