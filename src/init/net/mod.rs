//! Network bring-up for the live image.
