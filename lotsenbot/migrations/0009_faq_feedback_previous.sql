-- A person can leave 👍 and 👎 on the same answer at once; the later one is the verdict.
-- The earlier reaction, while it stands, is kept beside it, so that taking the later one
-- back restores the earlier verdict instead of deleting every verdict.
ALTER TABLE faq_feedback ADD COLUMN previous_helpful INTEGER;
ALTER TABLE faq_feedback ADD COLUMN previous_reaction TEXT;
CREATE INDEX faq_feedback_previous ON faq_feedback (previous_reaction)
    WHERE previous_reaction IS NOT NULL;
