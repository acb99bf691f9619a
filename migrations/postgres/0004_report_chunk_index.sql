-- A reader fetches chunk N of a report (GET /v1/reports/{id}/chunks/{N}): found by index,
-- not by scanning the report's chunks.
CREATE INDEX report_chunks_idx ON report_chunks(report_id, idx);
