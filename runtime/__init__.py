"""The bottom room: what every other room shares and nothing above it may re-implement.

- `runtime.errors`   — the error hierarchy (`MeshportError` and the shared kinds under it);
- `runtime.files`    — atomic writes (files, directories, JSON) and JSON reads with typed errors;
- `runtime.record`   — the typed build record (`build.json`): `BuildRecord.load()` / `.save()`;
- `runtime.tflite`   — one TFLite flatbuffer graph model (read, edit, write; op names, dtypes, shapes);
- `runtime.runners`  — the Runner contract and registry: the one way to run an artifact.

Imports here are light (numpy at most); runtimes load inside the runners that use them."""
