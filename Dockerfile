# The eventaudit image: one image, every command (users, relay, audit, verify, …). Used by compose.yaml.
FROM python:3.11-slim
WORKDIR /app
# gcc builds the codec's optional C accelerator; without it the pure-Python codec is used.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY src ./src
RUN pip install --no-cache-dir --no-deps . && useradd --system --home /app eventaudit
USER eventaudit
ENTRYPOINT ["eventaudit"]
CMD ["--help"]
