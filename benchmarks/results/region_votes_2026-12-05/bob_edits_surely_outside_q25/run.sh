# run.sh core prompts.yaml tag: the suite with the region's surely-outside pixels the lowest quarter of Otsu's lower
# class (the code of /work/exp3: HEAD plus surely_outside_variant.patch), in a separate output folder.
cd /work/main
S=outputs/suite_q25
export OMP_NUM_THREADS=1 PYTHONPATH=/work/exp3 SURELY_OUTSIDE=q0.25
taskset -c $1 avatarstudio suite --output $S --identities blonde-bob-dark --prompts $S/$2 > $S/$3.log 2>&1
echo done > $S/$3.done
