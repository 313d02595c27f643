//! Gallery: images per user and per pack, the latest tune per user.
//!
//! Keys: `image/<user>/<image_id>` → [`ImageSummary`], `pack/<pack_id>` →
//! [`PackSummary`] (stale revisions ignored), `tune/<user>` → [`TuneSummary`]
//! (the last created in stream order).

use backbone_schemas::{
    Envelope, Event,
    common::v1::media_ref::Location,
    media::v1::{ImageProcessed, PackImagesUpdated, TuneCreated},
};
use serde::{Deserialize, Serialize};

use crate::{
    error::{HandlerError, StoreError},
    model::{ReadModel, typed},
    store::{ProjectionStore, decode_json},
    transaction::{Transaction, key, prefix},
};

/// The gallery read model.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gallery;

/// A processed image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSummary {
    /// The image id.
    pub image_id: String,
    /// Where the processed image is (URL or blob key).
    pub location: String,
    /// Width in pixels.
    pub width_px: u32,
    /// Height in pixels.
    pub height_px: u32,
    /// The stream sequence that processed it.
    pub seq: u64,
}

/// A pack's current images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackSummary {
    /// The owner.
    pub user_id: String,
    /// The revision applied.
    pub revision: u64,
    /// Image ids in display order.
    pub image_ids: Vec<String>,
}

/// A user's latest tune.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TuneSummary {
    /// The tune id.
    pub tune_id: String,
    /// Its title.
    pub title: String,
    /// The base model.
    pub base_model: String,
    /// The pack it trained on.
    pub pack_id: String,
    /// The stream sequence that created it.
    pub seq: u64,
}

impl Gallery {
    fn image(seq: u64, e: ImageProcessed, tx: &mut Transaction<'_>) -> Result<(), HandlerError> {
        if e.image_id.is_empty() {
            return Err(HandlerError::permanent("image.processed without image id"));
        }
        let location = match e.processed.and_then(|m| m.location) {
            Some(Location::Url(u)) => u,
            Some(Location::BlobKey(k)) => k,
            None => String::new(),
        };
        let summary = ImageSummary {
            image_id: e.image_id.clone(),
            location,
            width_px: e.width_px,
            height_px: e.height_px,
            seq,
        };
        tx.put_json(
            &key(&[b"image", e.user_id.as_bytes(), e.image_id.as_bytes()]),
            &summary,
        );
        Ok(())
    }

    fn tune(seq: u64, e: TuneCreated, tx: &mut Transaction<'_>) -> Result<(), HandlerError> {
        let summary = TuneSummary {
            tune_id: e.tune_id,
            title: e.title,
            base_model: e.base_model,
            pack_id: e.pack_id,
            seq,
        };
        tx.put_json(&key(&[b"tune", e.user_id.as_bytes()]), &summary);
        Ok(())
    }

    fn pack(e: PackImagesUpdated, tx: &mut Transaction<'_>) -> Result<(), HandlerError> {
        let k = key(&[b"pack", e.pack_id.as_bytes()]);
        if let Some(current) = tx.get_json::<PackSummary>(&k)?
            && current.revision >= e.revision
        {
            return Ok(());
        }
        tx.put_json(
            &k,
            &PackSummary {
                user_id: e.user_id,
                revision: e.revision,
                image_ids: e.image_ids,
            },
        );
        Ok(())
    }

    /// `user`'s processed images, by image id.
    pub fn images(store: &ProjectionStore, user: &str) -> Result<Vec<ImageSummary>, StoreError> {
        let p = prefix(&[b"image", user.as_bytes()]);
        store
            .scan_prefix(&p)
            .map(|e| e.and_then(|(_, v)| decode_json(&v)))
            .collect()
    }

    /// A pack's current state.
    pub fn pack_of(
        store: &ProjectionStore,
        pack_id: &str,
    ) -> Result<Option<PackSummary>, StoreError> {
        store.get_json(&key(&[b"pack", pack_id.as_bytes()]))
    }

    /// `user`'s latest tune.
    pub fn latest_tune(
        store: &ProjectionStore,
        user: &str,
    ) -> Result<Option<TuneSummary>, StoreError> {
        store.get_json(&key(&[b"tune", user.as_bytes()]))
    }
}

impl ReadModel for Gallery {
    fn name(&self) -> &'static str {
        "gallery"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &[
            ImageProcessed::TYPE,
            TuneCreated::TYPE,
            PackImagesUpdated::TYPE,
        ]
    }

    fn apply(
        &self,
        seq: u64,
        event: &Envelope,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError> {
        match event.event_type.as_str() {
            ImageProcessed::TYPE => Self::image(seq, typed(event)?, tx),
            TuneCreated::TYPE => Self::tune(seq, typed(event)?, tx),
            PackImagesUpdated::TYPE => Self::pack(typed(event)?, tx),
            other => Err(HandlerError::permanent(format!(
                "gallery cannot apply {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::testing::{apply_all, image, pack, tune};

    #[test]
    fn images_packs_and_tunes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProjectionStore::open(dir.path()).unwrap();
        apply_all(
            &Gallery,
            &store,
            vec![
                image("u-1", "img-1"),
                image("u-1", "img-2"),
                image("u-2", "img-3"),
                pack("pk-1", "u-1", 2, &["img-2", "img-1"]),
                pack("pk-1", "u-1", 1, &["img-1"]),
                tune("u-1", "t-1", "pk-1"),
                tune("u-1", "t-2", "pk-1"),
            ],
        );
        let ids: Vec<_> = Gallery::images(&store, "u-1")
            .unwrap()
            .into_iter()
            .map(|i| i.image_id)
            .collect();
        assert_eq!(ids, vec!["img-1", "img-2"]);
        let p = Gallery::pack_of(&store, "pk-1").unwrap().unwrap();
        assert_eq!(
            (p.revision, p.image_ids),
            (2, vec!["img-2".to_owned(), "img-1".to_owned()])
        );
        assert_eq!(
            Gallery::latest_tune(&store, "u-1")
                .unwrap()
                .unwrap()
                .tune_id,
            "t-2"
        );
        assert_eq!(Gallery::latest_tune(&store, "u-2").unwrap(), None);
    }
}
