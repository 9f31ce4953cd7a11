"""The paper's learning core, read in one sitting: the run's schema (``config``), sample weights and weighted draws
(``weighting``: LDS and the field's schemes), the dataset as device tensors served by index (``data``), the
policies (``policies``) and the weighted maximum-likelihood LightningModule (``module``)."""
