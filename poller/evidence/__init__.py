"""The evidence archive (SPEC §8): the media behind an answer's FileInfo links, kept verified.

Read in pipeline order: `fields` picks the FileInfos of the chosen fields out of an answer (pure),
`download` fetches one link and checks its size and MD5, `store` is where files live (a directory
in `local`, an object store in `object_store`), `manifest` is the per-token record of what was
kept (pure), and `archive` runs one token's archive pass. `verify` is the auditor's re-check.
"""
