-- The COPY format of a transmission's batches: agents move COPY binary when
-- every column allows it (cheaper to produce and to load), text otherwise.
ALTER TABLE transmissor.transmissions
    ADD COLUMN copy_format text NOT NULL DEFAULT 'text'
        CHECK (copy_format IN ('text', 'binary'));
