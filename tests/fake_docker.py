"""The slice of the docker SDK that mlpack's DockerBuilder uses, answering like a daemon
(there is no Docker daemon here; buildah runs for real in test_image.py)."""

from __future__ import annotations


class FakeImage:
    def __init__(self, image_id: str) -> None:
        self.id = image_id
        self.tags: list[tuple[str, str]] = []

    def tag(self, repository: str, tag: str) -> None:
        self.tags.append((repository, tag))


class FakeDocker:
    """The slice of docker.DockerClient that DockerBuilder uses, answering like a daemon."""

    def __init__(self, push_chunks: list[dict]) -> None:
        self.image = FakeImage("sha256:" + "c" * 64)
        self.push_chunks = push_chunks
        self.built: dict = {}
        self.api = self
        self.images = self

    def ping(self) -> bool:
        return True

    def get(self, ref: str) -> FakeImage:
        return self.image

    def build(self, **kwargs):
        self.built = kwargs
        yield {"stream": "Step 1/2 : FROM base\n"}
        yield {"aux": {"ID": self.image.id}}

    def push(self, repository: str, tag: str, stream: bool, decode: bool):
        yield {"status": "Pushed", "id": "layer1"}
        yield from self.push_chunks
