# The starcast worker image (docker-compose.yml builds it for both workers and the simulator).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY streams streams
RUN pip install --no-cache-dir .
ENV STARCAST_DATA_DIR=/data STARCAST_WEB_HOST=0.0.0.0
VOLUME /data
EXPOSE 6066
ENTRYPOINT ["starcast"]
CMD ["worker", "--loglevel", "info"]
